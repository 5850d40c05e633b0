"""Runnable training recipes (`recipe=NAME`), shipped as package data and registered in Hydra's ConfigStore."""
