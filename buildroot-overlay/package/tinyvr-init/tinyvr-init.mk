################################################################################
#
# tinyvr-init
#
################################################################################

TINYVR_INIT_VERSION = 0.1.0
# The tinyvr source tree this external tree lives in.
TINYVR_INIT_SITE = $(BR2_EXTERNAL_TINYVR_PATH)/..
TINYVR_INIT_SITE_METHOD = local
TINYVR_INIT_LICENSE = MIT OR Apache-2.0
# Build only the init from the workspace; the host tools are not for the target.
TINYVR_INIT_CARGO_BUILD_OPTS = --package tinyvr-init --bin tinyvr-init

# PID 1 is /init (initramfs) and /sbin/init (rootfs), as in tinyvr's own image.
define TINYVR_INIT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/$(TINYVR_INIT_CARGO_MODE)/tinyvr-init \
		$(TARGET_DIR)/init
	mkdir -p $(TARGET_DIR)/sbin $(TARGET_DIR)/etc/tinyvr
	ln -sf /init $(TARGET_DIR)/sbin/init
endef

$(eval $(cargo-package))
