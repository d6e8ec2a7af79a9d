"""Notification channels, one module each: local sendmail (default), SMTP, apprise, memory twin."""
