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


# Kinovi (seed 003, kinovi.ai/docs): the createTask bodies its pages print. The first three
# are the cURL examples of the text-to-video, image-to-video and Omni Reference pages,
# verbatim. The pages describe the two-image and the multi-material cases in their
# parameter tables ("urls: 1 image (first frame) or 2 images (first + last frame)";
# "urls" images then videos, "audioUrls", "@image1 performs the moves from @video1"); those
# two bodies are written from the tables in the same shape.
KINOVI_TEXT_TO_VIDEO: dict[str, Any] = {
    "model": "seedance-20",
    "inputs": {
        "prompt": "A serene mountain landscape at golden hour, cinematic camera slowly panning right",
        "duration": "5",
        "aspectRatio": "16:9",
    },
}

KINOVI_IMAGE_TO_VIDEO: dict[str, Any] = {
    "model": "seedance-20",
    "inputs": {
        "urls": ["https://example.com/your-image.jpg"],
        "prompt": "A cinematic shot with smooth camera movement, gentle wind blowing",
        "duration": "5",
    },
}

KINOVI_FIRST_AND_LAST_FRAME: dict[str, Any] = {
    "model": "seedance-20",
    "inputs": {
        "urls": ["https://example.com/first-frame.jpg", "https://example.com/last-frame.jpg"],
        "prompt": "A smooth transition from day to night",
        "duration": "5",
    },
}

KINOVI_OMNI_REFERENCE: dict[str, Any] = {
    "model": "seedance-20",
    "inputs": {
        "urls": ["https://example.com/character-portrait.jpg"],
        "prompt": "A person @image1 walking on the beach at sunset, cinematic lighting",
        "duration": "5",
        "mode": "reference",
    },
}

KINOVI_OMNI_ALL_MATERIALS: dict[str, Any] = {
    "model": "seedance-20",
    "inputs": {
        "urls": ["https://example.com/character.jpg", "https://example.com/dance.mp4"],
        "audioUrls": ["https://example.com/music.mp3"],
        "prompt": "@image1 performs the moves from @video1, synced to the rhythm of @audio1",
        "duration": "8",
        "aspectRatio": "9:16",
        "mode": "reference",
    },
    "callBackUrl": "https://your-server.example.com/kinovi-webhook",
}
