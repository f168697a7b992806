"""irad.data"""
