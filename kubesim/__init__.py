"""kubesim: a small local Kubernetes API server simulator (see README.md)."""
