"""Everything Dais asks the Hugging Face Hub, through ``huggingface_hub`` (honouring ``DAIS_HUB__URL``)."""
