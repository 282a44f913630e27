"""The network family (`net`) and its blocks, one file each; `fused` runs several members'
networks of one architecture as a single grouped network."""
