"""Never fail silently: alerts, channels, the daily digest and self-monitoring."""
