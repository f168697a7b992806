"""irad.train"""
