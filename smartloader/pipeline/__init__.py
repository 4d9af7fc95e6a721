"""The loader's surface and its epoch loop: :class:`~smartloader.pipeline.loader.SmartLoader`."""
