"""irad.resample"""
