"""Pure physics and prices: functions of arrays and numbers, no imports from the rest of gridcharge.

``profiles`` — daily load shapes, ambient and PV presets and their resampling onto a period grid; ``tariffs`` — Beijing
time-of-use presets; ``thermal`` — the IEC 60076-7 transformer thermal model and insulation ageing.
"""
