"""How the shipped shapes-world model is built: tokenizer, text pretraining, denoiser and ControlNet training."""
