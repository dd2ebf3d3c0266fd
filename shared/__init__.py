"""Shared wire contract, settings, Kafka and database helpers of Trayecto."""
