"""The image and compose.yaml for real: run by scripts/compose-test against its private engine."""
