"""irad.models"""
