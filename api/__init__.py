"""Online mode: the REST API (`cxr api`). The same decoder, ONNX file and outputs as `cxr predict`, through the one
`runtime.predictor.Predictor`, behind the limits a public endpoint needs. Never imports torch."""
