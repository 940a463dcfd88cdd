"""Platform-wide pages: the landing page, health, language, the API reference."""
