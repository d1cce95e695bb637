"""Stage 3: prepared dataset -> trained GAN (loop, state, losses, checkpoints, generation)."""
