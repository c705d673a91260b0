"""The headless core. Nothing under ``preceptor.engine`` may import Textual."""
