"""Records, dataset readers, patient splits, the image cache, `prepare`, phantoms and augmentation."""
