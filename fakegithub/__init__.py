"""fakegithub: a local stand-in for GitHub (the App API, OAuth, webhooks and git over HTTP) for tests and
`make run`. Standalone: it imports nothing of Tenter. See fakegithub/README.md."""
