"""The steps of the chain, one module each: check, cube, samples, train (with autocontext),
classify, mosaic, assess (validate), report. Each reads its inputs from the run store and
writes its outputs through it; no step calls another (pipeline.py orders them)."""
