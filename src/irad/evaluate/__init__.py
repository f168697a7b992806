"""irad.evaluate"""
