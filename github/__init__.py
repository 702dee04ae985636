"""The GitHub App integration: installations, webhooks, the API client and the repository picker."""
