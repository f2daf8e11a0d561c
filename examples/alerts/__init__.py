"""An alert task for ``RELAYDANCE_ON_ALERT`` that pages a chat channel."""
