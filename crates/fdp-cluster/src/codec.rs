//! The one physical codec every member of a cluster uses.
//!
//! Ballista writes its own operators (shuffle writers and readers, the
//! stages' boundaries) with its codec; OpenFDP writes the governed scans
//! and the policy's functions with [`GovernedPlanCodec`]. Ballista takes
//! one codec in place of its own, so this one holds both and tags each
//! node with whose it is.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use fdp_store::plan_codec::{is_selected_scan, GovernedPlanCodec};

const BALLISTA: u8 = 0;
const GOVERNED: u8 = 1;

/// Ballista's operators and the governed plan's, in one codec.
#[derive(Debug)]
pub struct ClusterCodec {
    ballista: BallistaPhysicalExtensionCodec,
    governed: GovernedPlanCodec,
}

impl ClusterCodec {
    pub fn new(governed: GovernedPlanCodec) -> ClusterCodec {
        ClusterCodec {
            ballista: BallistaPhysicalExtensionCodec::default(),
            governed,
        }
    }
}

impl PhysicalExtensionCodec for ClusterCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&BALLISTA, rest)) => self.ballista.try_decode(rest, inputs, ctx, converter),
            Some((&GOVERNED, rest)) => self.governed.try_decode(rest, inputs, ctx, converter),
            _ => Err(DataFusionError::Plan(
                "a plan node this cluster does not know".into(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if is_selected_scan(&node) {
            buf.push(GOVERNED);
            self.governed.try_encode(node, buf, converter)
        } else {
            buf.push(BALLISTA);
            self.ballista.try_encode(node, buf, converter)
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.governed.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.governed.try_encode_udf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.governed.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.governed.try_encode_udwf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.governed.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.governed.try_encode_udaf(node, buf)
    }
}
