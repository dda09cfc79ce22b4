from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    """orjson rendering: the GET and LIST hot paths spend much of their time serialising."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
