"""The shared core: what every stage and the browser contract share (class names, decoding, preprocessing, heatmap
maths, metrics, JSON and Markdown output). It imports nothing else of the project."""
