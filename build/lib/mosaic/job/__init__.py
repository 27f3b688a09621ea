"""What a job does around the stages of its data flow (`mosaic.pipeline` runs them): prepares its documents
(`prepare`, with labels from what a model answers: `behaviour`), scores transfer targets (`transfer`),
fingerprints what it read for resuming (`inputs`), and labels new texts with a saved probe (`predict`)."""
