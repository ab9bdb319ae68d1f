"""SAMS-VAE in Pyro."""
