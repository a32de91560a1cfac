"""The Kubernetes back-end: clusters, releases and environments through kubernetes-asyncio."""
