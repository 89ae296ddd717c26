"""Print a few example events as JSON lines, stamped with the current time.

    python examples/make_events.py | .venv/bin/streamer produce -
"""

import json
import time

now = int(time.time() * 1000)
events = [
    {"event_id": f"tc-lofi-{now}", "track_id": "trk-lofi-1", "occurred_at": now - 5000,
     "creator_id": "creator-7", "genre": "lofi", "ai_origin": "ai_generated",
     "ai_tool": "beatgen-2", "isrc": "USUV72600001",
     "rights": [{"holder_id": "label-1", "right": "master", "share": "0.75"},
                {"holder_id": "pub-1", "right": "publishing", "share": "0.5"},
                {"holder_id": "society-1", "right": "publishing", "share": "0.25"}]},
    {"event_id": f"tc-hyperpop-{now}", "track_id": "trk-hyperpop-1", "occurred_at": now - 4000,
     "creator_id": "creator-8", "genre": "hyperpop", "ai_origin": "human",
     "rights": [{"holder_id": "label-2", "right": "master", "share": 1},
                {"holder_id": "pub-1", "right": "publishing", "share": "1"}]},
]
for i in range(8):
    events.append({"event_id": f"su-{now}-{i}", "occurred_at": now - 3000 + i,
                   "track_id": "trk-lofi-1" if i % 3 else "trk-hyperpop-1",
                   "user_id": f"user-{i}", "use": "create" if i < 3 else "play",
                   "country": "DE" if i % 2 else "BR", "video_id": f"vid-{i}"})
for event in events:
    print(json.dumps(event))
