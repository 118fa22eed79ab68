"""Webhook delivery: retry policy, circuit breakers, signing, SSRF guard, sender, DLQ replay."""
