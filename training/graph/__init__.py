"""The torch modules that go into the exported ONNX graph and build the training cache alike: preprocessing
(geometry, normalisation), resampling, the lung segmenter and its crop. Training uses them to prepare images; the
export puts them in front of the classifier, so Python and the browser run the same preprocessing."""
