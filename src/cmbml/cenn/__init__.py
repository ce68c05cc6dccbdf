"""The component-separation experiment (after CENN): skies, foregrounds, patches, validation, baselines, networks, figures."""
