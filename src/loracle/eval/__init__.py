"""Measuring what each way of learning put into the model."""
