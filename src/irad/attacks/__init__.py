"""irad.attacks"""
