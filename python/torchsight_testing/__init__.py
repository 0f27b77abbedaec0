"""Test support for torchsight (not shipped in the npm package): the seeded example models, the
eager oracle the tests compare against, the BPE trainer, and the Hugging Face family fixtures."""
