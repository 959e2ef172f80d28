"""The training loop (torchvision's reference shape: `train_one_epoch`, `validate`, a small run state, save and
restore), its finalisation (temperature, OOD statistics) and distributed training."""
