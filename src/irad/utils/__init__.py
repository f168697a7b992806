"""Small helpers shared by every part of irad: atomic files, seeds, environment records."""
