"""The submit bodies printed in the provider pages (seeds 001 and 004), copied verbatim.

Shared by the tests that check the request model produces them and the simulator accepts
them.
"""

from __future__ import annotations

from typing import Any

# Seed 001, "Submit a task" (the cURL body).
SEED_001_SUBMIT: dict[str, Any] = {
    "model": "doubao-seedance-2-0-1080p",
    "prompt": "A dancer spins in golden hour light, cinematic",
    "seconds": "10",
    "metadata": {
        "ratio": "16:9",
        "resolution": "1080p",
        "generate_audio": True,
        "callback_url": "https://your-server.example.com/webhook",
    },
}

# Seed 001, "Reference media and @imageN" (content.json).
SEED_001_CONTENT: dict[str, Any] = {
    "model": "seedance-1-5-pro-with-audio",
    "prompt": "@image1 slowly turns its head toward the camera, soft studio light",
    "seconds": "5",
    "metadata": {
        "ratio": "16:9",
        "resolution": "720p",
        "content": [
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/cat.jpg"},
                "role": "reference_image",
            }
        ],
    },
}

# Seed 004, the cURL image-to-video example.
SEED_004_CURL: dict[str, Any] = {
    "model": "seedance-1-5-pro-with-audio",
    "prompt": "@image1 comes alive: gentle camera pull-back, hair moving in a soft breeze",
    "seconds": "5",
    "metadata": {
        "ratio": "16:9",
        "resolution": "720p",
        "content": [
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/portrait.jpg"},
                "role": "reference_image",
            }
        ],
    },
}
