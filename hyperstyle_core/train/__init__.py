"""Training the hypernetwork: the official losses (losses.py) on converted loss networks (nn.loss_networks)."""
