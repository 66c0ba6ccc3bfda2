"""napari adapters: widgets, reader/writer and sample data, thin over the library."""
