"""Two small user tools, one of each form ``@tool()`` accepts.

Load them into a worker with ``onward worker --tools examples.mytools`` (or
``ONWARD_TOOLS=examples.mytools``) and name them in a run's ``tools``.
Neither touches the network, so they work anywhere, including in tests.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from onward.activities.tools import ToolContext, tool
from onward.errors import ToolError

__all__ = ["ConvertArgs", "convert_units", "get_weather"]

_CELSIUS = {"paris": 18.0, "oslo": 4.0, "cairo": 31.0}
"""Canned weather: an example has no business calling a weather service."""

_FACTORS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623}


@tool(timeout_s=10, max_attempts=2)
async def get_weather(
    city: Annotated[str, Field(min_length=1, max_length=100)],
    unit: Literal["c", "f"] = "c",
) -> str:
    """Current weather for a city.

    Args:
        city: City name, e.g. 'Paris'.
        unit: 'c' for Celsius, 'f' for Fahrenheit.

    Returns:
        One line: the city, the temperature and the sky.
    """
    celsius = _CELSIUS.get(city.strip().lower())
    if celsius is None:
        known = ", ".join(name.title() for name in sorted(_CELSIUS))
        raise ToolError(f"no weather for {city!r}; this example knows {known}")
    value = celsius if unit == "c" else celsius * 9 / 5 + 32
    return f"{city.strip().title()}: {value:g} °{unit.upper()}, clear sky"


class ConvertArgs(BaseModel):
    """Arguments of :data:`convert_units`."""

    value: float = Field(description="The amount to convert.")
    from_unit: Literal["km", "mi", "kg", "lb"] = Field(description="Unit of the amount.")
    to_unit: Literal["km", "mi", "kg", "lb"] = Field(description="Unit wanted.")


@tool(local=True, timeout_s=5)
def convert_units(args: ConvertArgs, ctx: ToolContext) -> str:
    """Convert a distance (km, mi) or a weight (kg, lb)."""
    if args.from_unit == args.to_unit:
        return f"{args.value:g} {args.to_unit}"
    factor = _FACTORS.get((args.from_unit, args.to_unit))
    if factor is None:
        inverse = _FACTORS.get((args.to_unit, args.from_unit))
        if inverse is None:
            raise ToolError(f"cannot convert {args.from_unit} to {args.to_unit}")
        factor = 1 / inverse
    return f"{args.value * factor:.4g} {args.to_unit}"
