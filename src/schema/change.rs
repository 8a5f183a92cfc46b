//! The vocabulary of differences between two schema versions, and which of them keep data
//! readable.
//!
//! The kinds and their verdicts are Confluent Schema Registry's JSON Schema difference types
//! (its `Difference.Type` and the strict `COMPATIBLE_CHANGES` set), so that a team moving from it
//! sees the same names and the same verdicts. Every kind describes a change from the *old*
//! schema to the *new* one; "compatible" means that data written with the old schema can still
//! be read with the new one.

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! change_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal, $compatible:literal;)*) => {
        /// One kind of difference between an old and a new schema.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ChangeKind {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ChangeKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ChangeKind] = &[$(ChangeKind::$variant,)*];

            /// The stable SCREAMING_SNAKE name, identical to Confluent's where Confluent has one.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ChangeKind::$variant => $name,)*
                }
            }

            /// Whether data written with the old schema stays readable with the new one.
            pub fn is_compatible(self) -> bool {
                match self {
                    $(ChangeKind::$variant => $compatible,)*
                }
            }
        }
    };
}

change_kinds! {
    /// `$id` changed. Annotation only.
    IdChanged => "ID_CHANGED", true;
    /// `description` changed. Annotation only.
    DescriptionChanged => "DESCRIPTION_CHANGED", true;
    /// `title` changed. Annotation only.
    TitleChanged => "TITLE_CHANGED", true;
    /// `default` changed. Annotation only.
    DefaultChanged => "DEFAULT_CHANGED", true;
    /// A subschema (such as `items`) appeared where there was none.
    SchemaAdded => "SCHEMA_ADDED", false;
    /// A subschema (such as `items`) disappeared, which accepts more.
    SchemaRemoved => "SCHEMA_REMOVED", true;
    /// `integer` became `number`.
    TypeExtended => "TYPE_EXTENDED", true;
    /// `number` became `integer`.
    TypeNarrowed => "TYPE_NARROWED", false;
    /// The type changed to an unrelated one.
    TypeChanged => "TYPE_CHANGED", false;

    /// `maxLength` appeared.
    MaxLengthAdded => "MAX_LENGTH_ADDED", false;
    /// `maxLength` disappeared.
    MaxLengthRemoved => "MAX_LENGTH_REMOVED", true;
    /// `maxLength` grew.
    MaxLengthIncreased => "MAX_LENGTH_INCREASED", true;
    /// `maxLength` shrank.
    MaxLengthDecreased => "MAX_LENGTH_DECREASED", false;
    /// `minLength` appeared.
    MinLengthAdded => "MIN_LENGTH_ADDED", false;
    /// `minLength` disappeared.
    MinLengthRemoved => "MIN_LENGTH_REMOVED", true;
    /// `minLength` grew.
    MinLengthIncreased => "MIN_LENGTH_INCREASED", false;
    /// `minLength` shrank.
    MinLengthDecreased => "MIN_LENGTH_DECREASED", true;
    /// `pattern` appeared.
    PatternAdded => "PATTERN_ADDED", false;
    /// `pattern` disappeared.
    PatternRemoved => "PATTERN_REMOVED", true;
    /// `pattern` changed.
    PatternChanged => "PATTERN_CHANGED", false;

    /// `maximum` appeared.
    MaximumAdded => "MAXIMUM_ADDED", false;
    /// `maximum` disappeared.
    MaximumRemoved => "MAXIMUM_REMOVED", true;
    /// `maximum` grew.
    MaximumIncreased => "MAXIMUM_INCREASED", true;
    /// `maximum` shrank.
    MaximumDecreased => "MAXIMUM_DECREASED", false;
    /// `minimum` appeared.
    MinimumAdded => "MINIMUM_ADDED", false;
    /// `minimum` disappeared.
    MinimumRemoved => "MINIMUM_REMOVED", true;
    /// `minimum` grew.
    MinimumIncreased => "MINIMUM_INCREASED", false;
    /// `minimum` shrank.
    MinimumDecreased => "MINIMUM_DECREASED", true;
    /// `exclusiveMaximum` appeared (in draft-04: became `true` at an unchanged `maximum`).
    ExclusiveMaximumAdded => "EXCLUSIVE_MAXIMUM_ADDED", false;
    /// `exclusiveMaximum` disappeared (in draft-04: stopped being `true` at an unchanged
    /// `maximum`).
    ExclusiveMaximumRemoved => "EXCLUSIVE_MAXIMUM_REMOVED", true;
    /// `exclusiveMaximum` grew.
    ExclusiveMaximumIncreased => "EXCLUSIVE_MAXIMUM_INCREASED", true;
    /// `exclusiveMaximum` shrank.
    ExclusiveMaximumDecreased => "EXCLUSIVE_MAXIMUM_DECREASED", false;
    /// `exclusiveMinimum` appeared (in draft-04: became `true` at an unchanged `minimum`).
    ExclusiveMinimumAdded => "EXCLUSIVE_MINIMUM_ADDED", false;
    /// `exclusiveMinimum` disappeared (in draft-04: stopped being `true` at an unchanged
    /// `minimum`).
    ExclusiveMinimumRemoved => "EXCLUSIVE_MINIMUM_REMOVED", true;
    /// `exclusiveMinimum` grew.
    ExclusiveMinimumIncreased => "EXCLUSIVE_MINIMUM_INCREASED", false;
    /// `exclusiveMinimum` shrank.
    ExclusiveMinimumDecreased => "EXCLUSIVE_MINIMUM_DECREASED", true;
    /// `multipleOf` appeared.
    MultipleOfAdded => "MULTIPLE_OF_ADDED", false;
    /// `multipleOf` disappeared.
    MultipleOfRemoved => "MULTIPLE_OF_REMOVED", true;
    /// The new `multipleOf` is a multiple of the old one, so fewer values pass.
    MultipleOfExpanded => "MULTIPLE_OF_EXPANDED", false;
    /// The old `multipleOf` is a multiple of the new one, so every old value still passes.
    MultipleOfReduced => "MULTIPLE_OF_REDUCED", true;
    /// `multipleOf` changed to an unrelated value.
    MultipleOfChanged => "MULTIPLE_OF_CHANGED", false;

    /// An existing property became required and has no default.
    RequiredAttributeAdded => "REQUIRED_ATTRIBUTE_ADDED", false;
    /// An existing property became required and has a default.
    RequiredAttributeWithDefaultAdded => "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED", true;
    /// A property stopped being required.
    RequiredAttributeRemoved => "REQUIRED_ATTRIBUTE_REMOVED", true;
    /// `maxProperties` appeared.
    MaxPropertiesAdded => "MAX_PROPERTIES_ADDED", false;
    /// `maxProperties` disappeared.
    MaxPropertiesRemoved => "MAX_PROPERTIES_REMOVED", true;
    /// `maxProperties` grew.
    MaxPropertiesIncreased => "MAX_PROPERTIES_INCREASED", true;
    /// `maxProperties` shrank.
    MaxPropertiesDecreased => "MAX_PROPERTIES_DECREASED", false;
    /// `minProperties` appeared.
    MinPropertiesAdded => "MIN_PROPERTIES_ADDED", false;
    /// `minProperties` disappeared.
    MinPropertiesRemoved => "MIN_PROPERTIES_REMOVED", true;
    /// `minProperties` grew.
    MinPropertiesIncreased => "MIN_PROPERTIES_INCREASED", false;
    /// `minProperties` shrank.
    MinPropertiesDecreased => "MIN_PROPERTIES_DECREASED", true;
    /// `additionalProperties: false` was lifted.
    AdditionalPropertiesAdded => "ADDITIONAL_PROPERTIES_ADDED", true;
    /// Additional properties became forbidden.
    AdditionalPropertiesRemoved => "ADDITIONAL_PROPERTIES_REMOVED", false;
    /// A schema on additional properties was dropped, so any value passes.
    AdditionalPropertiesExtended => "ADDITIONAL_PROPERTIES_EXTENDED", true;
    /// Additional properties that took any value now have a schema.
    AdditionalPropertiesNarrowed => "ADDITIONAL_PROPERTIES_NARROWED", false;
    /// A property's dependency list (`dependentRequired`, or an array in `dependencies` up to
    /// draft-07) appeared.
    DependencyArrayAdded => "DEPENDENCY_ARRAY_ADDED", false;
    /// A property's dependency list disappeared.
    DependencyArrayRemoved => "DEPENDENCY_ARRAY_REMOVED", true;
    /// A property's dependency list gained names.
    DependencyArrayExtended => "DEPENDENCY_ARRAY_EXTENDED", false;
    /// A property's dependency list lost names.
    DependencyArrayNarrowed => "DEPENDENCY_ARRAY_NARROWED", true;
    /// A property's dependency list changed otherwise.
    DependencyArrayChanged => "DEPENDENCY_ARRAY_CHANGED", false;
    /// A property's dependent schema (`dependentSchemas`, or a schema in `dependencies` up to
    /// draft-07) appeared.
    DependencySchemaAdded => "DEPENDENCY_SCHEMA_ADDED", false;
    /// A property's dependent schema disappeared.
    DependencySchemaRemoved => "DEPENDENCY_SCHEMA_REMOVED", true;
    /// A required property without default was added to an open content model, where old
    /// data may already hold that name with any value, or lack it.
    RequiredPropertyAddedToOpenContentModel => "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", false;
    /// A required property with a default was added to an open content model, where old data
    /// may already hold that name with any value.
    RequiredPropertyWithDefaultAddedToOpenContentModel => "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL", false;
    /// An optional property was added to an open content model, where old data may already
    /// hold that name with any value.
    OptionalPropertyAddedToOpenContentModel => "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", false;
    /// A property accepting anything was added to an open content model.
    PropertyWithEmptySchemaAddedToOpenContentModel => "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", true;
    /// A required property without default was added to a closed or partially open model.
    RequiredPropertyAddedToUnopenContentModel => "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", false;
    /// A required property with a default was added to a closed or partially open model.
    RequiredPropertyWithDefaultAddedToUnopenContentModel => "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL", true;
    /// An optional property was added to a closed or partially open model.
    OptionalPropertyAddedToUnopenContentModel => "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", true;
    /// A property was removed and the new model is open, so old values still pass.
    PropertyRemovedFromOpenContentModel => "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", true;
    /// A property declared `false` was removed from a closed model.
    PropertyWithFalseRemovedFromClosedContentModel => "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", true;
    /// A property was removed from a closed model, so old data holding it is refused.
    PropertyRemovedFromClosedContentModel => "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", false;
    /// A removed property is still accepted by the new `patternProperties` or
    /// `additionalProperties` schema.
    PropertyRemovedIsCoveredByPartiallyOpenContentModel => "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// A removed property is not accepted by the new `patternProperties` or
    /// `additionalProperties` schema.
    PropertyRemovedNotCoveredByPartiallyOpenContentModel => "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// An added property accepts everything the old `patternProperties` or
    /// `additionalProperties` schema accepted under that name.
    PropertyAddedIsCoveredByPartiallyOpenContentModel => "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// An added property refuses values the old `patternProperties` or `additionalProperties`
    /// schema accepted under that name.
    PropertyAddedNotCoveredByPartiallyOpenContentModel => "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// `unevaluatedProperties: false` was lifted.
    UnevaluatedPropertiesAdded => "UNEVALUATED_PROPERTIES_ADDED", true;
    /// Unevaluated properties became forbidden.
    UnevaluatedPropertiesRemoved => "UNEVALUATED_PROPERTIES_REMOVED", false;
    /// A schema on unevaluated properties was dropped.
    UnevaluatedPropertiesExtended => "UNEVALUATED_PROPERTIES_EXTENDED", true;
    /// Unevaluated properties that took any value now have a schema.
    UnevaluatedPropertiesNarrowed => "UNEVALUATED_PROPERTIES_NARROWED", false;

    /// `maxItems` appeared.
    MaxItemsAdded => "MAX_ITEMS_ADDED", false;
    /// `maxItems` disappeared.
    MaxItemsRemoved => "MAX_ITEMS_REMOVED", true;
    /// `maxItems` grew.
    MaxItemsIncreased => "MAX_ITEMS_INCREASED", true;
    /// `maxItems` shrank.
    MaxItemsDecreased => "MAX_ITEMS_DECREASED", false;
    /// `minItems` appeared.
    MinItemsAdded => "MIN_ITEMS_ADDED", false;
    /// `minItems` disappeared.
    MinItemsRemoved => "MIN_ITEMS_REMOVED", true;
    /// `minItems` grew.
    MinItemsIncreased => "MIN_ITEMS_INCREASED", false;
    /// `minItems` shrank.
    MinItemsDecreased => "MIN_ITEMS_DECREASED", true;
    /// `maxContains` appeared.
    MaxContainsAdded => "MAX_CONTAINS_ADDED", false;
    /// `maxContains` disappeared.
    MaxContainsRemoved => "MAX_CONTAINS_REMOVED", true;
    /// `maxContains` grew.
    MaxContainsIncreased => "MAX_CONTAINS_INCREASED", true;
    /// `maxContains` shrank.
    MaxContainsDecreased => "MAX_CONTAINS_DECREASED", false;
    /// `minContains` appeared.
    MinContainsAdded => "MIN_CONTAINS_ADDED", false;
    /// `minContains` disappeared.
    MinContainsRemoved => "MIN_CONTAINS_REMOVED", true;
    /// `minContains` grew.
    MinContainsIncreased => "MIN_CONTAINS_INCREASED", false;
    /// `minContains` shrank.
    MinContainsDecreased => "MIN_CONTAINS_DECREASED", true;
    /// `uniqueItems: true` appeared.
    UniqueItemsAdded => "UNIQUE_ITEMS_ADDED", false;
    /// `uniqueItems: true` disappeared.
    UniqueItemsRemoved => "UNIQUE_ITEMS_REMOVED", true;
    /// Items after the tuple, forbidden before, are allowed now.
    AdditionalItemsAdded => "ADDITIONAL_ITEMS_ADDED", true;
    /// Items after the tuple became forbidden.
    AdditionalItemsRemoved => "ADDITIONAL_ITEMS_REMOVED", false;
    /// The schema of items after the tuple was dropped.
    AdditionalItemsExtended => "ADDITIONAL_ITEMS_EXTENDED", true;
    /// Items after the tuple, which took any value, now have a schema.
    AdditionalItemsNarrowed => "ADDITIONAL_ITEMS_NARROWED", false;
    /// `unevaluatedItems: false` was lifted.
    UnevaluatedItemsAdded => "UNEVALUATED_ITEMS_ADDED", true;
    /// Unevaluated items became forbidden.
    UnevaluatedItemsRemoved => "UNEVALUATED_ITEMS_REMOVED", false;
    /// A schema on unevaluated items was dropped.
    UnevaluatedItemsExtended => "UNEVALUATED_ITEMS_EXTENDED", true;
    /// Unevaluated items that took any value now have a schema.
    UnevaluatedItemsNarrowed => "UNEVALUATED_ITEMS_NARROWED", false;
    /// A tuple position was added to an open array, where old data may hold anything there.
    ItemAddedToOpenContentModel => "ITEM_ADDED_TO_OPEN_CONTENT_MODEL", false;
    /// A tuple position accepting anything was added to an open array.
    ItemWithEmptySchemaAddedToOpenContentModel => "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", true;
    /// A tuple position was added to a closed array, where old data has nothing there.
    ItemAddedToClosedContentModel => "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", true;
    /// A tuple position was removed and the new array is open.
    ItemRemovedFromOpenContentModel => "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", true;
    /// A tuple position declared `false` was removed from a closed array.
    ItemWithFalseRemovedFromClosedContentModel => "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", true;
    /// A tuple position was removed from a closed array, so old data holding it is refused.
    ItemRemovedFromClosedContentModel => "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", false;
    /// A removed tuple position is still accepted by the new schema of the remaining items.
    ItemRemovedIsCoveredByPartiallyOpenContentModel => "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// A removed tuple position is not accepted by the new schema of the remaining items.
    ItemRemovedNotCoveredByPartiallyOpenContentModel => "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;
    /// An added tuple position accepts everything the old schema of the remaining items did.
    ItemAddedIsCoveredByPartiallyOpenContentModel => "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", true;
    /// An added tuple position refuses values the old schema of the remaining items accepted.
    ItemAddedNotCoveredByPartiallyOpenContentModel => "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", false;

    /// `enum` gained values and kept all old ones.
    EnumArrayExtended => "ENUM_ARRAY_EXTENDED", true;
    /// `enum` lost values.
    EnumArrayNarrowed => "ENUM_ARRAY_NARROWED", false;
    /// `enum` (or `const`) changed otherwise.
    EnumArrayChanged => "ENUM_ARRAY_CHANGED", false;

    /// The combinator became more permissive (e.g. `oneOf` to `anyOf`).
    CombinedTypeExtended => "COMBINED_TYPE_EXTENDED", true;
    /// The combinator changed otherwise (e.g. `anyOf` to `allOf`).
    CombinedTypeChanged => "COMBINED_TYPE_CHANGED", false;
    /// `allOf` gained a member: more constraints.
    ProductTypeExtended => "PRODUCT_TYPE_EXTENDED", false;
    /// `allOf` lost a member, or a single member of it became the schema: fewer constraints.
    ProductTypeNarrowed => "PRODUCT_TYPE_NARROWED", true;
    /// `anyOf`/`oneOf` gained a member, or a schema became one member of it.
    SumTypeExtended => "SUM_TYPE_EXTENDED", true;
    /// `anyOf`/`oneOf` lost a member.
    SumTypeNarrowed => "SUM_TYPE_NARROWED", false;
    /// Some member of the old combination has no compatible counterpart in the new one.
    CombinedTypeSubschemasChanged => "COMBINED_TYPE_SUBSCHEMAS_CHANGED", false;
    /// The schema under `not` now refuses less, so the whole accepts less.
    NotTypeExtended => "NOT_TYPE_EXTENDED", false;
    /// The schema under `not` now refuses more, so the whole accepts more.
    NotTypeNarrowed => "NOT_TYPE_NARROWED", true;
    /// `if`/`then`/`else` changed. Confluent does not look inside these; we report any change
    /// as breaking because we cannot tell its direction.
    ConditionalChanged => "CONDITIONAL_CHANGED", false;
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ChangeKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One difference between an old and a new schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What changed.
    pub kind: ChangeKind,
    /// Where, as a JSON pointer fragment into the schema (`#/properties/age`; `#` is the root).
    /// A change inside a `$ref` target is reported where the reference is used.
    pub pointer: String,
    /// Whether data written with the old schema stays readable with the new one despite it.
    pub compatible: bool,
}

impl Difference {
    pub(crate) fn new(kind: ChangeKind, pointer: String) -> Self {
        Self {
            kind,
            pointer,
            compatible: kind.is_compatible(),
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.kind, self.pointer)
    }
}
