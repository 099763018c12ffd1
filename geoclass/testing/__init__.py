"""The synthetic scene generator (tiles in UTM with per-class phenology, clouds, ground truth,
regions, nomenclature, colour table, in every layout the readers take) and the demo: what the
demo, the tests and the benchmarks run on. Not part of the engine: nothing in it is imported
by the steps."""
