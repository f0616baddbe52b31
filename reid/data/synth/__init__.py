"""Synthetic pedestrians: drawn people with fixed identities and changing outfits, captioned in several styles."""

from reid.data.synth.captions import STYLE_NAMES
from reid.data.synth.writer import ANNOTATION_FILE, ATTRIBUTES_FILE, IMAGE_DIR, SUMMARY_FILE, SynthSummary, generate

__all__ = ["ANNOTATION_FILE", "ATTRIBUTES_FILE", "IMAGE_DIR", "STYLE_NAMES", "SUMMARY_FILE", "SynthSummary", "generate"]
