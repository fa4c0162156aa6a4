"""Hyperparameter search harness for convolutional autoencoders on CIFAR-10."""

__version__ = "0.1.0"
