"""End-to-end workflows: active learning, the demo."""
