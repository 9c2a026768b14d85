"""The reference workload: credit-card fraud detection on simulated card transactions."""
