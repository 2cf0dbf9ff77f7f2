"""Basket complements and product enrichment routes (being written)."""
from fastapi import APIRouter

router = APIRouter()
