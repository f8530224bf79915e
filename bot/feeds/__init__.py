"""Advisory feeds (plugins) and the normalised advisory model they all produce."""
