"""What every family shares: the family interface and registry, saved models, the training
loop, evaluation (bits per note) and originality."""
