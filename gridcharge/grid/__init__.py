"""Pure physics and prices: functions of arrays and numbers, no imports from the rest of gridcharge.

``profiles`` — daily load shapes and their resampling onto a period grid; ``tariffs`` — Beijing time-of-use presets.
"""
