"""The torch-free base every stage and the browser contract share: class names, decoding, heatmap maths, metrics,
JSON and Markdown output, checksums, progress bars. It imports nothing else of the project and never torch
(tests/test_architecture.py): the runtime, the API and the site builder stand on it alone."""
